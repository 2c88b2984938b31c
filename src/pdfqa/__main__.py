from pdfqa.cli import main

# Guarded: extraction children are spawned, and spawn re-imports the parent's __main__.
if __name__ == "__main__":
    main()
