"""`python -m edge.profiler`: see `edge.profiler.report.main`."""

from edge.profiler.report import main

raise SystemExit(main())
