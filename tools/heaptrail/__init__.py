"""heaptrail: heap tracing for C and C++ on a Linux host and on boards."""

__version__ = "0.1.0"
