from rollout.entry import main

main()
