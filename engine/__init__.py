"""dondoc engine: rules -> instances -> evaluation -> notices."""

__version__ = "0.1.0"
