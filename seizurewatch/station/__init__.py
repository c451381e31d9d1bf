"""The nurse-station page (``seizurewatch station``). Internal (the public API is ``seizurewatch.api``)."""
