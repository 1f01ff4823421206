"""What the control-channel methods do: one module per capability."""
