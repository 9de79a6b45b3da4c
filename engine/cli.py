"""`python -m engine.cli …` runs the `dondoc` command (application layer: engine/app/cli/)."""

from engine.app.cli import app, main  # noqa: F401  (tests drive `app`)

if __name__ == "__main__":  # pragma: no cover
    main()
