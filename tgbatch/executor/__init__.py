"""How shards are placed. ``local`` runs one shard in this process. The contract for any other placement
(a Slurm array, a Kubernetes Indexed Job, Ray) is ``--shard I/N`` and per-shard manifests in one output
location: each shard is a normal run that resumes on its own."""
