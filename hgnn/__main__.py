from hgnn.cli.main import main

raise SystemExit(main())
