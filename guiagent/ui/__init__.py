"""See what the agents did: the trajectory viewer, the live farm dashboard and the training report.

- :mod:`guiagent.ui.viewer` — ``guiagent view RUN_OR_STORE``: an index of a trajectory store's episodes
  (filters by task, outcome, policy version, rollout kind), a page per episode with each step's screenshot
  and its action drawn on it, and a GRPO group's trajectories side by side; served, or written as static
  files.
- :mod:`guiagent.ui.dashboard` — ``guiagent farm dashboard``: every device of a farm, live (server-sent
  events).
- :mod:`guiagent.ui.report` — :func:`~guiagent.ui.report.write_report`: a run directory's HTML report.

Pages are Jinja2 templates with autoescaping (model text is shown as text, never run as HTML), served by
Starlette under uvicorn; the JavaScript and CSS are plain files in ``static/`` (no build step).
"""
