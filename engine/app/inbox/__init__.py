"""Reports that arrive by e-mail (issue 14): the pure heart the mailbox reader calls.

``parse`` turns the bytes of one message into an ``InboundMail`` and never raises; ``classify.kind``
tells a report from an auto-reply or a bounce; ``match`` finds the unit, obligation and period it
answers from data the caller passes in. Nothing here touches IMAP or writes to the database, so the
reader (fetch, commit, flag) stays small and every decision here is tested on plain bytes.
No imports here: the modules import each other by their full names (no package-level cycle).
"""
