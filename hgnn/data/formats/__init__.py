"""Readers, one module per on-disk format. Each reads and validates, nothing else.

Contract shared by every reader ``read_xxx(path, **options) -> (HeteroData, TaskSpec)``:

* node types are plain names (``"paper"``); ``data[t].x`` is a dense float32 ``[N_t, F_t]`` tensor,
  or absent for a type the source ships without features (then ``data[t].num_nodes`` is set and the
  type is listed in ``TaskSpec.featureless``);
* ``data[(src, rel, dst)].edge_index`` is int64 ``[2, E]`` in per-type local ids, messages flowing
  src -> dst; ``rel`` is the source's own relation name where it has one, else ``"to"``; relations
  are emitted as the source stores them (both directions only when the files hold both);
  ``edge_weight`` (float32 ``[E]``) only where the source's weights are not all one;
* on the target type: ``y`` (long ``[N]``, ``-1`` when unlabelled; or float32 ``[N, C]`` 0/1 for
  multi-label) and bool masks ``train_mask`` / ``val_mask`` / ``test_mask``; for holdout tasks the
  training pool is ``train_pool_mask`` (= ``train_mask``) and ``val_mask`` is empty until
  :func:`hgnn.data.splits.holdout_split` draws it;
* any inconsistency raises :class:`hgnn.errors.DataFormatError` naming the file (and line).
"""
