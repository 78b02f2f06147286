from vistra.cli.main import main

raise SystemExit(main())
