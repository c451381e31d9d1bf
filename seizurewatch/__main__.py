from seizurewatch.cli import main

raise SystemExit(main())
