"""The external interface: feed formats, validation rules and the settlement-period calendar."""
