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
