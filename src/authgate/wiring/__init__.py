"""The parts ``authgate.container.build_services`` builds the registry from, one module
per area (infrastructure, protection, credentials, accounts, monitoring), each builder
under 40 lines; like the container, nothing here knows what runs on the services
(``authgate.runtime``)."""
