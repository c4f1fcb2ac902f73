"""The store: the model folder and the BAM_DIR on disk. Every path under
models/<name>/ is built here (`model_dir.ModelDir`), with the files'
formats, the folder's identity, its locks and claims, the trials handed
to a process (`trial_hold.claim_trials`) and the reading of folders that
earlier versions wrote (`migration`)."""
