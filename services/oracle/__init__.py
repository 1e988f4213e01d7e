"""Oracle service: polls price sources, publishes index prices with their TWAPs to oracle.prices."""
