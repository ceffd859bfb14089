from genarun.cli import main

# Guarded: a worker process started with `spawn` imports this module again (as __mp_main__).
if __name__ == "__main__":
    main()
