// Preloaded into Azurite (node --require). Azure Table Storage answers a point operation on
// (PartitionKey, RowKey) from its clustered index in constant time. Azurite asks LokiJS for
// {PartitionKey, RowKey}; LokiJS uses the index of the first key only and scans the rest, so every
// insert, read, update and delete costs a walk of the whole partition and seeding one large
// partition grows quadratically. Asking for RowKey first uses its binary index to narrow to a handful
// of rows, then checks the PartitionKey: same answer, the cost Azure has.
"use strict";
const path = require("path");

const azuriteDir = path.join(__dirname, "..", "node_modules", "azurite");
const Loki = require(require.resolve("lokijs", { paths: [azuriteDir] }));
const findOne = Loki.Collection.prototype.findOne;

Loki.Collection.prototype.findOne = function (query) {
  if (query && typeof query === "object" && this.binaryIndices && this.binaryIndices.RowKey) {
    const keys = Object.keys(query);
    if (keys.length === 2 && keys[0] === "PartitionKey" && keys[1] === "RowKey"
        && typeof query.RowKey === "string" && typeof query.PartitionKey === "string") {
      return findOne.call(this, { RowKey: query.RowKey, PartitionKey: query.PartitionKey });
    }
  }
  return findOne.call(this, query);
};

// A query whose filter is "PartitionKey eq '<pk>' and ..." (no top-level `or`) is answered by Table
// Storage from that partition; Azurite runs its compiled filter over every row of the table. The same
// filter, run over the partition's rows only (from the PartitionKey index), gives the same rows.
const Store = require(path.join(azuriteDir, "dist", "src", "table", "persistence",
                                "LokiTableMetadataStore.js")).default;
const queryTableEntities = Store.prototype.queryTableEntities;
const chain = Loki.Collection.prototype.chain;
let partitionHint = null;

function topLevelOr(text) {
  let depth = 0;
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i];
    if (quoted) {
      if (ch === "'") {
        if (text[i + 1] === "'") i++;
        else quoted = false;
      }
    } else if (ch === "'") quoted = true;
    else if (ch === "(") depth++;
    else if (ch === ")") depth--;
    else if (depth === 0 && /\s/.test(ch) && /^\s+or\s/i.test(text.slice(i, i + 5))) return true;
  }
  return false;
}

function partitionOf(filter) {
  if (typeof filter !== "string") return null;
  const match = /^\s*PartitionKey\s+eq\s+'((?:[^']|'')*)'(\s*$|\s+and\s)/.exec(filter);
  if (!match || topLevelOr(filter)) return null;
  return match[1].replace(/''/g, "'");
}

Store.prototype.queryTableEntities = function (context, account, table, queryOptions, ...rest) {
  // The original builds its query synchronously (no await before it chains the collection).
  partitionHint = partitionOf(queryOptions && queryOptions.filter);
  try {
    return queryTableEntities.call(this, context, account, table, queryOptions, ...rest);
  } finally {
    partitionHint = null;
  }
};

Loki.Collection.prototype.chain = function (...args) {
  const hint = partitionHint;
  if (hint !== null && args.length === 0 && this.binaryIndices && this.binaryIndices.PartitionKey) {
    partitionHint = null; // this query's collection only
    return chain.call(this).find({ PartitionKey: hint });
  }
  return chain.apply(this, args);
};
