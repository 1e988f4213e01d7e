// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {AggregatorV3Interface} from "../interfaces/AggregatorV3Interface.sol";

/// @title A Chainlink-style price feed whose answers its owner writes, for local chains and tests.
/// @notice Answers the AggregatorV3 read calls exactly as a feed does, so the oracle's Chainlink
///         code path runs unchanged against it. Never deploy it where real value depends on it.
/// @dev Round ids count up from 1 (no phase bits). Only the owner (the deployer) may write rounds,
///      as only the oracle network may move a real feed; anyone may read.
contract MockV3Aggregator is AggregatorV3Interface, Ownable {
    /// @dev What Chainlink's current OCR aggregators answer to `version()`.
    uint256 public constant override version = 4;

    struct Round {
        int256 answer;
        uint256 startedAt;
        uint256 updatedAt;
        uint80 answeredInRound;
    }

    uint8 public immutable override decimals;
    string public override description;

    /// @notice The round `latestRoundData` reports.
    uint80 public latestRound;

    mapping(uint80 roundId => Round) private _rounds;

    /// @notice The same events a Chainlink aggregator emits, so log watchers can be tested too.
    event AnswerUpdated(int256 indexed current, uint256 indexed roundId, uint256 updatedAt);
    event NewRound(uint256 indexed roundId, address indexed startedBy, uint256 startedAt);

    /// @notice `getRoundData` was asked for a round that was never written.
    error NoDataPresent(uint80 roundId);

    /// @param decimals_ decimals of every answer
    /// @param description_ e.g. "BTC / USD"
    /// @param initialAnswer the answer of round 1, published now
    constructor(uint8 decimals_, string memory description_, int256 initialAnswer) Ownable(msg.sender) {
        decimals = decimals_;
        description = description_;
        updateAnswer(initialAnswer);
    }

    /// @notice Publish `answer` as a new round, started and updated at this block's time.
    function updateAnswer(int256 answer) public onlyOwner {
        uint80 roundId = latestRound + 1;
        _write(roundId, answer, block.timestamp, block.timestamp, roundId);
    }

    /// @notice Write round `roundId` with the given times and make it the latest
    ///         (answeredInRound = roundId). Lets a test publish old or future timestamps, or
    ///         updatedAt = 0 (a round that never completed).
    function updateRoundData(uint80 roundId, int256 answer, uint256 timestamp, uint256 startedAt)
        external
        onlyOwner
    {
        _write(roundId, answer, startedAt, timestamp, roundId);
    }

    /// @notice Write every field of round `roundId` and make it the latest. Beyond what Chainlink's
    ///         own mock offers: `answeredInRound < roundId` models an answer carried over from an
    ///         earlier round, which consumers must refuse.
    function setRound(
        uint80 roundId,
        int256 answer,
        uint256 startedAt,
        uint256 updatedAt,
        uint80 answeredInRound
    ) external onlyOwner {
        _write(roundId, answer, startedAt, updatedAt, answeredInRound);
    }

    /// @inheritdoc AggregatorV3Interface
    function getRoundData(uint80 roundId)
        external
        view
        override
        returns (uint80, int256, uint256, uint256, uint80)
    {
        Round storage round = _rounds[roundId];
        // Every written round has answeredInRound set or a timestamp; an all-zero slot was never written.
        if (round.updatedAt == 0 && round.startedAt == 0 && round.answeredInRound == 0) {
            revert NoDataPresent(roundId);
        }
        return (roundId, round.answer, round.startedAt, round.updatedAt, round.answeredInRound);
    }

    /// @inheritdoc AggregatorV3Interface
    function latestRoundData() external view override returns (uint80, int256, uint256, uint256, uint80) {
        uint80 roundId = latestRound;
        Round storage round = _rounds[roundId];
        return (roundId, round.answer, round.startedAt, round.updatedAt, round.answeredInRound);
    }

    function _write(uint80 roundId, int256 answer, uint256 startedAt, uint256 updatedAt, uint80 answeredInRound)
        private
    {
        _rounds[roundId] = Round(answer, startedAt, updatedAt, answeredInRound);
        latestRound = roundId;
        emit NewRound(roundId, msg.sender, startedAt);
        emit AnswerUpdated(answer, roundId, updatedAt);
    }
}
