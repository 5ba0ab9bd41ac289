"""The reconciled layer: ``hh_margin``, published once every stream has consumed one substrate version."""
