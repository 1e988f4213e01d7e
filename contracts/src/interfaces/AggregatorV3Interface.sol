// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

/// @title The read side of a Chainlink price feed (the "AggregatorV3" ABI).
/// @notice Written from the published ABI so that our mocks and any real feed answer the same calls;
///         the oracle service reads feeds through exactly these functions.
/// @dev A "round" is one published answer. `answer` is a fixed-point number with `decimals()`
///      decimals. On a real feed behind a proxy, `roundId` packs the phase in its top 16 bits.
interface AggregatorV3Interface {
    /// @notice Number of decimals of `answer` (8 for most USD feeds, 18 for ETH-quoted ones).
    function decimals() external view returns (uint8);

    /// @notice Human-readable pair, e.g. "BTC / USD".
    function description() external view returns (string memory);

    /// @notice Version of the aggregator implementation behind the feed.
    function version() external view returns (uint256);

    /// @notice One past round. Reverts when the feed holds no data for `roundId`.
    /// @return roundId the round asked for
    /// @return answer the value, with `decimals()` decimals
    /// @return startedAt when the round started (seconds since the epoch)
    /// @return updatedAt when `answer` was last written (seconds); 0 means the round is not complete
    /// @return answeredInRound the round in which `answer` was computed; below `roundId` means the
    ///         answer was carried over from an earlier round
    function getRoundData(uint80 roundId)
        external
        view
        returns (uint80, int256 answer, uint256 startedAt, uint256 updatedAt, uint80 answeredInRound);

    /// @notice The latest round, with the same fields as `getRoundData`. Does not revert on an empty feed.
    function latestRoundData()
        external
        view
        returns (uint80 roundId, int256 answer, uint256 startedAt, uint256 updatedAt, uint80 answeredInRound);
}
