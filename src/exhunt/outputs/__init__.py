"""Writers that turn a scan result into the files and tables responders use."""
