"""Research on the extract mode's span ranker, on the numbers its retrain keeps."""
