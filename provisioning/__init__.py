"""doorkeep.provisioning — identity, pairing, signed configuration, Pi deployment."""
