"""Published pretrained models turned into seizurewatch model files (``seizurewatch import``).

A pretrained model is a registered architecture that is fitted once with nothing to fit
(``research.hills.FittedModel``): ``train``, ``threshold --policy oof`` and ``compare`` handle it
through the same code path as a patient model (every recording is out of fold for it), and
``seizurewatch import`` writes it as a model file without a dataset. Its weights come from the
installed package (``pip install 'seizurewatch[pretrained]'``) at import time only; the model
file holds them, with the package's licence text in its metadata.
"""
