"""The 'cudnnconv' logger.  A CUDNNCONV_DEBUG=1 build prints it to stderr at
DEBUG level; otherwise it is silent unless the user configures it.  Only
searches and fallbacks log (never a cache hit), so it costs nothing per call."""
import logging

logger = logging.getLogger("cudnnconv")


def enable_debug_output():
    if not any(getattr(h, "_cudnnconv", False) for h in logger.handlers):
        h = logging.StreamHandler()
        h.setFormatter(logging.Formatter("cudnnconv: %(message)s"))
        h._cudnnconv = True
        logger.addHandler(h)
    logger.setLevel(logging.DEBUG)


def debug(msg, *args):
    if logger.isEnabledFor(logging.DEBUG):
        logger.debug(msg, *args)
