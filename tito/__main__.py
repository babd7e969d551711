from tito.cli import main

main()
