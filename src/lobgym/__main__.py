from lobgym.cli import main

main()
