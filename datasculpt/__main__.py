from datasculpt.main import main

main()
