"""Everything that writes to Slack: the channel, the outbound pace, incident channels."""
