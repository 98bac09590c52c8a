"""Where cases run: one subprocess per case (``isolate``), shards of a plan (``shard``, joined by ``merge``) and
one Ray task per shard (``ray_executor``). Nothing here measures; ``bench/run.py`` drives them."""
