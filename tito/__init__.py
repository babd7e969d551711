"""tito: the course tool for TinyTorch (exporter, dataset loaders, milestone harness, CLI).

Students never edit this package; it is what turns *their* notebooks into *their* tinytorch.
"""
