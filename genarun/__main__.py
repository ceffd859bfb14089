from genarun.cli import main

main()
