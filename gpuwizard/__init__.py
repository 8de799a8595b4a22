"""gpuwizard: from a Google Cloud account to a GPU VM that runs your experiment.

The core package holds no UI: the Textual screens live in the top-level ``screens``
package and only drive what is here. Keep this module import-free so that
``gpuwizard --help`` starts in a blink.
"""

__version__ = "0.1.0"
