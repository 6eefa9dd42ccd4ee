# The agent's ACL tokens: /etc/peerd.d/acl-tokens.hcl, mode 0640, group
# peerd (install -m 0640 -g peerd). Replace each REPLACE-WITH-UUID-N with a UUID of its own
# (`cat /proc/sys/kernel/random/uuid`); README.md "ACLs" makes the tokens
# with these secrets once the cluster runs.
acl {
  tokens {
    # Servers only, the same on each: the first leader makes a management
    # token with this secret. Delete the line from client nodes.
    initial_management = "REPLACE-WITH-UUID-1"
    # Every node: the token of the agent's own calls (a node policy).
    agent = "REPLACE-WITH-UUID-2"
    # Every node: requests without a token, and DNS, use this one.
    default = "REPLACE-WITH-UUID-3"
  }
}
