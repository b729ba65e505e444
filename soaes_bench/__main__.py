from soaes_bench.cli import main

raise SystemExit(main())
