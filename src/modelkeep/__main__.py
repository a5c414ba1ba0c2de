from modelkeep.cli.main import main

main()
