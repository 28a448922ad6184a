"""exhunt: find ProxyLogon-era Exchange exploitation in collected evidence."""

__version__ = "0.1.0"
