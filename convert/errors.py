"""The one exception the converter raises for bad model files."""


class ConversionError(Exception):
    """A Caffe file cannot be converted; the message names the file, layer or blob at fault."""
