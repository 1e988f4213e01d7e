"""The project's chain toolbox: compiled contracts, signing keys, deployments, local mock feeds.

- `artifacts`: builds `contracts/` with the pinned solcjs on first use and loads the results;
- `accounts`: which key signs (anvil's public dev keys only as the local fallback);
- `client`: connect, deploy, send and bind with web3.py;
- `deployments`: the per-network file of addresses (`<run dir>/deployments/local.json`);
- `mocks`: the command that deploys and moves mock Chainlink feeds on the local chain.

Not a service: services and dev tools import it, like `services.common`.
"""
