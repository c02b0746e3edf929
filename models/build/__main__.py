from models.build.cli import main

raise SystemExit(main())
