"""The registry: `models.yaml` read, validated and looked up (`registry`), and checked against the Hub (`doctor`);
checkpoint files told apart by their tensors and made entries (`checkpoints`).

It imports only the ground floor (`helpers.base`); every wing above finds its models here, by key.
"""
