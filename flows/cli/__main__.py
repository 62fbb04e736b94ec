from wikiref.flows.cli import main

main()
