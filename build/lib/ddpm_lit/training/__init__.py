"""Lightning: the DDPMModule that wires the parts, the EMA callback, checkpoint IO."""
