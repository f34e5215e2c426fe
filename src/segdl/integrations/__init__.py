"""segdl behind the seams Python programs already download through.

- :mod:`segdl.integrations.pooch`: ``SegdlDownloader``, a downloader for ``pooch.retrieve``
  and ``Pooch.fetch`` (extra ``segdl[pooch]``).
- :mod:`segdl.integrations.fsspec`: ``SegdlFileSystem``, an fsspec filesystem registered as
  ``segdl``, ``segdl+http`` and ``segdl+https`` (extra ``segdl[fsspec]``).

Neither is imported by ``import segdl``: each needs its library, checked at import.
"""
