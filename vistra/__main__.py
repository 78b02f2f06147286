from vistra.cli.main import main

main()
