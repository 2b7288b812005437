"""clickback: a self-hosted S2S (postback URL) conversion tracker."""

__version__ = "0.1.0"
