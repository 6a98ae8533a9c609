from giskard.cli import main

main()
