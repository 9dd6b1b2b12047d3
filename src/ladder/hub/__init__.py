"""Hub role: members and invites, the directory of exits, the switch."""
