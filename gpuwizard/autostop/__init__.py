"""Auto-stop: the VM stops (or deletes) itself when nobody uses it.

:mod:`gpuwizard.autostop.agent` is the stdlib-only program that runs on the VM (shipped as a
file); :mod:`gpuwizard.autostop.settings` turns a recipe's ``autostop`` block into its config
and the plan step that installs it.
"""
