"""The ``tocsin`` subcommands, grouped by what they work on; :mod:`pipeline.cli` wires them.

Each command is ``cmd_NAME(args, settings) -> exit code`` and imports what it needs only when
it runs, so parsing arguments and ``--help`` stay light:

- :mod:`~pipeline.commands.runtime`: worker, kafka, produce, demo, settings
- :mod:`~pipeline.commands.simulation`: simulate, evaluate
- :mod:`~pipeline.commands.detection`: rules, score, models
- :mod:`~pipeline.commands.operate`: query, problems, problem, ack, silence
"""
