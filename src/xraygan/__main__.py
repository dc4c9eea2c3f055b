from xraygan.cli import main

raise SystemExit(main())
