"""The Textual front end of gpuwizard: the wizard screens and the run screen.

Everything here drives the core (:mod:`gpuwizard`); the core never imports this
package. One module per screen; :mod:`screens.app` holds the App, the Recipe draft
all screens edit, and the ``cmd_new`` / ``cmd_edit`` entry points. The plain logic
the screens use (choices, costs, the run-event model) lives in modules that do not
import Textual either (:mod:`screens.choices`, :mod:`screens.live`,
:mod:`screens.runmodel`), so it is testable without a terminal.
"""

#: The wizard's screens in order: (name, title). ``gpuwizard edit --screen NAME`` and
#: the command palette use these names.
WIZARD_STEPS: tuple[tuple[str, str], ...] = (
    ("quota", "Project & quota"),
    ("zone", "Zone"),
    ("machine", "Machine"),
    ("driver", "Driver"),
    ("environment", "Environment"),
    ("dataset", "Dataset"),
    ("steps", "Steps"),
    ("review", "Review"),
)
